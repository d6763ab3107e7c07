"""The five OMS services, each its own process, schema and database role."""
