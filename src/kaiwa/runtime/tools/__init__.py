"""Tools: one module per step type, one small interface (`base.Tool`), and the `Toolbox`
(`toolbox.py`) that turns an agent's `unified_tools` into the tools of one turn."""
