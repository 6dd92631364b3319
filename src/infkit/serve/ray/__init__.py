"""The Ray Serve engine: the Serve application (app), its Serve config (config), deploy and lifecycle."""
