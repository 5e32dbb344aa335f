from edge_tools.publish.cli import main

raise SystemExit(main())
