"""The plan: peak memory, speed, the advisor's pick and its reasons."""
