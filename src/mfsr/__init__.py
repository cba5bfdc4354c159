"""mfsr: multi-frame face super-resolution."""

import os

__version__ = "0.1.0"

# mfsr reports unreadable videos itself, in one line; keep OpenCV/FFmpeg from printing their
# own stderr chatter ("moov atom not found"). Must be set before cv2 is first imported.
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
