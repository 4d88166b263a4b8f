"""DAO classes."""
