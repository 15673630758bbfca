import sys

from ludwig_llm.cli import main

sys.exit(main())
