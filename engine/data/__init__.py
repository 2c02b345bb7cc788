"""Reading datasets: bounded reads, format detection, validation with file:line."""
