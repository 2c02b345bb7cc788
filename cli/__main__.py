from finetune_tui.main import main

raise SystemExit(main())
