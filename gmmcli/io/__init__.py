"""Reading and writing data tables and model files."""
