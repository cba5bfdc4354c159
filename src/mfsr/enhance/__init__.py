"""``mfsr enhance``: a real clip (or a few cropped frames) -> enhanced faces, no ground truth.

=====================  ==================================================================
:mod:`.geometry`       face-size check, window selection, frame padding (pure functions)
:mod:`.model`          :func:`load_enhancer` (checkpoint or baseline) -> :class:`Enhancer`
:mod:`.source`         decode (optionally shrunk), track, crop patches, register windows
:mod:`.outputs`        face PNGs, labelled side-by-side images, ``enhance.json``
:mod:`.run`            :func:`enhance_video`, :func:`enhance_frames` (end to end)
=====================  ==================================================================

```python
from mfsr.enhance import enhance_video, load_enhancer

enhancer = load_enhancer("runs/quick")  # or load_enhancer(baseline="classical")
doc = enhance_video("clip.mp4", enhancer, "out/", every=7, batch_size=16)
```

Importing this package imports torch, OpenCV and NumPy (dlib only when tracking).
"""

from __future__ import annotations

from mfsr.enhance.model import Enhancer, load_enhancer
from mfsr.enhance.run import enhance_frames, enhance_video

__all__ = ["Enhancer", "enhance_frames", "enhance_video", "load_enhancer"]
