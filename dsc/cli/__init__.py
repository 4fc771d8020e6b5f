"""The command-line layer shared by every ``python -m dsc.<entry>``: the entry-point skeleton
(``entry_point``), what the console shows (``console``) and the config schemas that check values
when a config is composed (``schema``)."""
