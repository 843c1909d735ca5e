"""Rules across the planes: the dependency order and foreign errors mapped at each boundary."""
