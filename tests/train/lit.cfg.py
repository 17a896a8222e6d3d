lit_config.load_config(config, __file__.replace("/train/lit.cfg.py", "/lit.cfg.py"))
