"""The artist's door: operators, the modal runner, the N-panel and the settings it shows."""
