"""The NVFlare job's client script (a package so that non-editable installs ship it)."""
