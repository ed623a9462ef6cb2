from nexus_fast.cli import main

raise SystemExit(main())
