"""``python -m helpers.claims``: print the claims ledger; exit 1 if any claim failed.

The ledger itself (recording and reading claim checks) lives in ``helpers.core.ledger``.
"""

import sys

from helpers.core.ledger import main

if __name__ == "__main__":
    sys.exit(main())
