"""Card certificates and signatures: pure verification functions (no database, no HTTP)."""
