"""The facade's jobs, one runner each: images (prompted objects, segment-everything, concepts:
:mod:`samkit.runners.images`), video (prompted objects, concept video, detector + tracker:
:mod:`samkit.runners.video`), sharing the settings checks (:mod:`samkit.runners.settings`) and the streaming /
saving tail (:mod:`samkit.runners.output`). :class:`samkit.SAM` only chooses the runner, by the model's
capabilities."""
