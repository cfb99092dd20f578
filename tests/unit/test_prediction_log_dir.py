"""The host folder the model containers log predictions to is evidence: nobody but the image's
unprivileged user may write there."""

from __future__ import annotations

import os
import stat

import pytest

from cd4ml.release.dockerfile import UID
from cd4ml.release.render import Rendered
from cd4ml.release.targets import prepare_log_dir


@pytest.mark.skipif(os.geteuid() != 0, reason="handing the folder to the image's user needs root")
def test_log_folder_belongs_to_the_image_user_and_is_not_world_writable(tmp_path):
    folder = tmp_path / "logs" / "wine" / "staging"
    prepare_log_dir(Rendered(target="local", environment="staging", name="wine-staging", files={},
                             context={"prediction_logs": str(folder)}))
    st = folder.stat()
    assert st.st_uid == UID
    assert not st.st_mode & (stat.S_IWOTH | stat.S_IWGRP)
