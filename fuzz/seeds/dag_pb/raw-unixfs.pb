
hello