"""What the API serves: each author's deployed twin (a record per author) and the loaded models."""
