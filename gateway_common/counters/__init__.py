"""Counter stores shared by replicas: Redis (`redis_store`), and the failure policy around any store
(`guarded`) that decides what requests get while the store cannot be reached."""
