"""Lecture mode: named presets that reproduce the literature's figures (presets.toml), rendered headless
(lecture.render) and exported as slides (lecture.export, run as `python -m lecture.export`)."""
