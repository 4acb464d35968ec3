"""The console's widgets, one idea per module; each renders part of the view model."""
