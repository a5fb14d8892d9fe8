"""Northwind daily: its definition and its outputs."""
