"""Work that runs outside requests: each loop owns its transactions, one unit of work per step."""
