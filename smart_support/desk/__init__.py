"""The ticket desk: durable queue, storm incidents and skill-based assignment (no Flask)."""
