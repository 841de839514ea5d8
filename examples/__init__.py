"""Short Keras programs with Nero swapped in: `python -m examples.<name> --data PATH`."""
