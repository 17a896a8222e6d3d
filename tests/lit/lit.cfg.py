lit_config.load_config(config, __file__.replace("/lit/lit.cfg.py", "/lit.cfg.py"))
