lit_config.load_config(config, __file__.replace("/errors/lit.cfg.py", "/lit.cfg.py"))
