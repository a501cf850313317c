"""The entry package: the settings (config), the `privacy-api` command (cli) and what a command
checks before it starts (startup), beside the layers in web/, schema/, resolvers/ and workers/."""
