"""The study's evidence records, one module a record of ``bench/results/``: detection quality over
seeds, the budget, the lab, the floor, the recipe search and the rest; each module's docstring and
record give the command that produced it."""
