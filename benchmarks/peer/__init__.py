"""The comparison peer: a minimal Django view doing one INSERT, served beside the platform."""
