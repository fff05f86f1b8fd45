"""Video sources: every kind, on-demand decoding, reverse and random access, and clear errors."""

from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest

from samkit.data.sources import SourceError
from samkit.data.video import ArrayVideo, FileVideo, FolderVideo, StreamVideo, VideoReadError, is_stream, open_video
from tests.helpers import moving_square_frames, square_left_edge, write_video


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    return write_video(path, moving_square_frames(40))


def test_file_video_forward_reverse_and_random_access(clip):
    with open_video(clip) as v:
        assert isinstance(v, FileVideo) and len(v) == 40 and (v.height, v.width) == (96, 128)
        assert v.fps == pytest.approx(10.0)
        fwd = list(v.frames())
        assert [i for i, _ in fwd] == list(range(40))
        assert [abs(square_left_edge(f) - 2 * i) <= 1 for i, f in fwd] == [True] * 40
        back = list(v.frames(start=39, reverse=True))
        assert [i for i, _ in back] == list(range(39, -1, -1))
        for i, f in back:
            assert np.array_equal(f, fwd[i][1]), f"reverse frame {i} differs from forward"
        for i in (33, 2, 17, 17, 0):
            assert np.array_equal(v.read(i), fwd[i][1])
        assert [i for i, _ in v.frames(start=10, stop=14)] == [10, 11, 12, 13]
        assert [i for i, _ in v.frames(start=10, reverse=True, stop=6)] == [10, 9, 8, 7]


def test_folder_video_natural_order_any_names(tmp_path):
    frames = moving_square_frames(12)
    for i, f in enumerate(frames):  # frame2 must come before frame10; png and jpg mixed
        cv2.imwrite(str(tmp_path / f"shot_{i}.{'png' if i % 2 else 'jpg'}"), f)
    (tmp_path / "notes.txt").write_text("not a frame")
    v = open_video(tmp_path)
    assert isinstance(v, FolderVideo) and len(v) == 12
    assert [v.files[i].name for i in (2, 10)] == ["shot_2.jpg", "shot_10.jpg"]
    assert [abs(square_left_edge(f) - 2 * i) <= 1 for i, f in v.frames()] == [True] * 12


def test_array_video(tmp_path):
    frames = moving_square_frames(5)
    v = open_video(frames)
    assert isinstance(v, ArrayVideo) and len(v) == 5
    assert np.array_equal(v.read(3), frames[3])
    stacked = open_video(np.stack(frames))
    assert len(stacked) == 5
    gray = open_video([f[..., 0] for f in frames])
    assert gray.read(0).shape == (96, 128, 3)


def test_read_ahead_thread_stops_when_the_consumer_stops(clip):
    v = open_video(clip)
    it = v.frames()
    for _ in range(3):
        next(it)
    it.close()
    assert not [t for t in threading.enumerate() if t.name == "samkit-video-read-ahead"]


def test_truncated_video_keeps_earlier_frames(tmp_path):
    # AVI keeps its frame count in the header, so a cut file opens and fails part-way: the frames read before the
    # cut stay valid and the error names the file and the frame.
    avi = write_video(tmp_path / "clip.avi", moving_square_frames(40), codec="MJPG")
    data = avi.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    v = open_video(cut)
    assert len(v) == 40
    got = []
    with pytest.raises(VideoReadError, match=r"cut\.avi: frame \d+ of 40 cannot be read"):
        for i, f in v.frames():
            got.append(i)
            assert abs(square_left_edge(f) - 2 * i) <= 1
    assert got == list(range(len(got))) and 5 < len(got) < 40
    # MP4 keeps its index at the end: a cut file cannot be opened at all, and says so.
    mp4 = write_video(tmp_path / "clip.mp4", moving_square_frames(40))
    (tmp_path / "cut.mp4").write_bytes(mp4.read_bytes()[: mp4.stat().st_size // 2])
    with pytest.raises(SourceError, match=r"cut\.mp4.* cannot be opened as a video"):
        open_video(tmp_path / "cut.mp4")


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda p: p / "missing.mp4", "does not exist"),
        (lambda p: (p / "empty").mkdir() or p / "empty", "holds no images"),
        (lambda p: (p / "junk.mp4").write_bytes(b"\x00garbage" * 100) or p / "junk.mp4", "cannot be opened"),
        (lambda p: (p / "zero.mp4").write_bytes(b"") or p / "zero.mp4", "cannot be opened|has no frames"),
        (lambda p: [], "non-empty list"),
        (lambda p: 3.5, "unsupported video source of type float"),
    ],
)
def test_bad_sources(tmp_path, make, match):
    with pytest.raises(SourceError, match=match):
        open_video(make(tmp_path))


def test_bad_frames_and_indices(tmp_path, clip):
    frames = moving_square_frames(3)
    frames[2] = frames[2][:50]
    v = open_video(frames)
    with pytest.raises(VideoReadError, match="frame 2 is 128x50 but the video is 128x96"):
        v.read(2)
    with pytest.raises(IndexError, match=r"frame 40 is out of range: .*clip.mp4 has 40 frames \(0..39\)"):
        open_video(clip).read(40)
    with pytest.raises(TypeError, match="frame index 1.5 must be an integer"):
        v.read(1.5)
    folder = tmp_path / "frames"
    folder.mkdir()
    cv2.imwrite(str(folder / "a1.png"), moving_square_frames(1)[0])
    (folder / "a2.png").write_bytes(b"not a png")
    with pytest.raises(VideoReadError, match=r"frame 1 \(a2.png\) cannot be read"):
        list(open_video(folder).frames())


def test_streams_are_forward_only(clip, monkeypatch):
    assert is_stream(0) and is_stream("rtsp://cam/1") and is_stream("https://host/live")
    assert not is_stream("clip.mp4") and not is_stream(True)
    # A file opened as a stream behaves like a live source: no length, no seeking, no reverse.
    s = StreamVideo(str(clip))
    assert s.live and s.length is None
    with pytest.raises(TypeError, match="no length"):
        len(s)
    with pytest.raises(ValueError, match="only be read forward"):
        next(s.frames(reverse=True))
    got = [i for i, _ in s.frames()]
    assert got == list(range(40)), "a stream ends quietly when frames stop"
    with pytest.raises(SourceError, match="webcam 7 cannot be opened"):
        monkeypatch.setattr(cv2, "VideoCapture", lambda *a: type("C", (), {"isOpened": lambda self: False})())
        StreamVideo(7)
