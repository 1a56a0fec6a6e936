"""Developer tooling: the speed, memory and scale benchmark of SSLAnomaly (`sslanomaly-bench`)."""
