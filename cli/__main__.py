from finetune_tui.main import run

run()
