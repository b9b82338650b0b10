"""``python -m medisynth ...`` = the ``medisynth`` command; what ``torchrun -m medisynth`` launches."""
from medisynth.cli import main

if __name__ == "__main__":
    main()
