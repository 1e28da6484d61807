"""The beat schedule and the periodic maintenance tasks."""
