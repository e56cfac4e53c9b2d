"""Roofline maths and verdicts: where a row stands against a target's ceilings."""
