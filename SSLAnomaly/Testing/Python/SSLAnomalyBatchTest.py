"""In-Slicer test of batch detection as run from the Python console: a folder of radiographs (one
of them unreadable) and then the scene's own volumes, with progress, per-case outputs and cancel.
Runs under `Slicer --testing` (ctest) and in the pytest suite under the headless harness."""

import tempfile
from pathlib import Path

import slicer
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleTest


class SSLAnomalyBatchTest(ScriptedLoadableModuleTest):
    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_batch_over_folder_and_scene()

    def test_batch_over_folder_and_scene(self):
        from SSLAnomaly import SSLAnomalyLogic
        from SSLAnomalyLib.core.reading.sample import sample_inputs

        root = Path(tempfile.mkdtemp(prefix="SSLAnomalyBatchTest-"))
        inputs = root / "inputs"
        inputs.mkdir()
        samples = sample_inputs(root / "sample")
        images = [inputs / path.name for path in samples]
        for image, path in zip(images, samples):
            image.symlink_to(path)
        (inputs / "broken.png").write_bytes(b"this is not a PNG")
        logic = SSLAnomalyLogic()

        self.delayDisplay("Batch over a folder")
        calls = []
        rows = logic.detectBatch(inputs, root / "out", progress=lambda done, total, name: calls.append((done, total)))
        total = len(rows)
        self.assertEqual(calls, [(i, total) for i in range(1, total + 1)])
        failed = [row for row in rows if "error" in row]
        self.assertEqual([Path(row["input"]).name for row in failed], ["broken.png"])
        for row in rows:
            if "files" in row:
                self.assertTrue(all(Path(p).is_file() for p in row["files"].values()))

        self.assertEqual(slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode"), [])  # file cases leave the scene

        self.delayDisplay("Batch over the scene's volumes, cancelled after the first")
        volumes = [logic.loadVolume(image) for image in images]
        rows = logic.detectBatch(None, root / "scene-out", progress=lambda done, total, name: False)
        self.assertEqual([row["input"] for row in rows], [volumes[0].GetName()])
        self.assertIsNotNone(logic.caseResult(volumes[0]))
        self.assertTrue(all(slicer.mrmlScene.IsNodePresent(v) for v in volumes))  # the user's volumes stay
        self.delayDisplay("Test passed")
