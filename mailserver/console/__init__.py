"""The admin console: pools, verdicts, crashdumps, the quarantine, and the assist dialog that
asks whether to send a crashdump for analysis. ``app`` builds the web application."""
