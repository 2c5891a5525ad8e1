"""desra's Gradio dashboard: lays out components and calls the library (no maths here)."""
