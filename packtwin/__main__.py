import sys

from packtwin.cli import main

sys.exit(main())
