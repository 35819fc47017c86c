"""Test kits: local stand-ins for the services digest delivers through (`sendgrid_emulator`)."""
