import sys

from desra.cli import main

sys.exit(main())
