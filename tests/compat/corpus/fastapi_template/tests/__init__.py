"""Tests for tkq_app."""
