"""The detector a user holds, and the findings it draws from a heatmap."""
