import sys

from cd4ml.cli import main

sys.exit(main())
