"""The README, the guide (docs/*.md) and examples/ hold to their word: their code runs."""
