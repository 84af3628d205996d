"""The core layer: errors, the generic registry, configuration hashing, ε parsing, checkpoints, statistics and the
hub cache. Everything else (attacks/, tasks/, the rest of bench/) may import it; it imports none of them."""
