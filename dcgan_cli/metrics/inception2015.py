"""The papers' FID network: TensorFlow's 2015 Inception graph, fed the way TTUR feeds it.

classify_image_graph_def.pb (from inception-2015-12-05.tgz) is a frozen
GraphDef. TTUR (Heusel et al. 2017, the FID paper's code) and StudioGAN's
TF-Inception column feed float images with values 0..255 at their own size
into the tensor 'ExpandDims:0' and read the 2,048 features of 'pool_3:0'; the
graph itself resizes to 299x299 (its 'ResizeBilinear' node, bilinear without
antialiasing) and scales to [-1, 1]. That is the "tf-graph" resize here.
clean-fid (Parmar et al. 2022) showed that this resize aliases when it
downscales; the "clean" option instead resizes each channel to 299x299 with
PIL's bicubic filter on float values, clips to 0..255 and feeds the result
(the graph's own resize is then the identity).

The Inception Score reads class probabilities as the IS paper's code does:
softmax(pool_3 . W) with W the weights of 'softmax/logits/MatMul' (1,008
classes, no bias), because the graph's own 'softmax:0' hangs off a reshape
fixed to a batch of one.

The GraphDef is imported inside `tf.compat.v1.wrap_function`, with
'ExpandDims:0' replaced by the function's input, so it runs as a TF2
concrete function on batches of any size; the JPEG-decoding nodes upstream of
'ExpandDims' are imported but never run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dcgan_cli.errors import DcganError

INPUT = "ExpandDims:0"
FEATURES = "pool_3:0"
LOGITS_MATMUL = "softmax/logits/MatMul"
SIZE = 299


class InceptionGraph:
    """A loaded GraphDef: `run(float images 0..255) -> (features, class probabilities or None)`."""

    def __init__(self, fn, dim: int, classes: int):
        self._fn, self.dim, self.classes = fn, dim, classes

    def run(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        import tensorflow as tf

        out = self._fn(tf.constant(images, tf.float32))
        return out[0].numpy(), (out[1].numpy() if self.classes else None)


def load_graph(path: str | Path) -> InceptionGraph:
    """Read the GraphDef at `path`; a file that is not one, or lacks the tensors, is a one-line error."""
    import tensorflow as tf
    from google.protobuf.message import DecodeError

    path = Path(path)
    graph_def = tf.compat.v1.GraphDef()
    try:
        graph_def.ParseFromString(path.read_bytes())
    except (DecodeError, RuntimeWarning) as e:
        raise DcganError(f"{path} is not a TensorFlow GraphDef ({type(e).__name__}); give the "
                         f"classify_image_graph_def.pb of inception-2015-12-05.tgz") from None
    names = {n.name for n in graph_def.node}
    lacking = [t for t in (INPUT, FEATURES) if t.split(":")[0] not in names]
    if lacking:
        raise DcganError(f"{path} has no tensor {', '.join(lacking)}; it is not the 2015 Inception graph "
                         f"(classify_image_graph_def.pb of inception-2015-12-05.tgz)")
    head = LOGITS_MATMUL in names

    def body(x):
        (pool3,) = tf.compat.v1.import_graph_def(graph_def, input_map={INPUT: x}, return_elements=[FEATURES],
                                                 name="inception")
        feats = tf.reshape(pool3, [tf.shape(x)[0], pool3.shape[-1]])  # (N, 1, 1, 2048) -> (N, 2048)
        if not head:
            return feats, tf.zeros([tf.shape(x)[0], 0])
        w = tf.compat.v1.get_default_graph().get_operation_by_name("inception/" + LOGITS_MATMUL).inputs[1]
        return feats, tf.nn.softmax(tf.matmul(feats, w))

    fn = tf.compat.v1.wrap_function(body, [tf.TensorSpec([None, None, None, 3], tf.float32)])
    dim = int(fn.outputs[0].shape[-1])
    classes = int(fn.outputs[1].shape[-1]) if head else 0
    return InceptionGraph(fn, dim, classes)


def clean_resize(images: np.ndarray, size: int = SIZE) -> np.ndarray:
    """clean-fid's resize: each channel as a float image, PIL bicubic to size x size, clipped to 0..255."""
    from PIL import Image

    out = np.empty((len(images), size, size, images.shape[-1]), np.float32)
    for i, im in enumerate(images):
        for c in range(im.shape[-1]):
            channel = Image.fromarray(im[..., c].astype(np.float32), mode="F")
            out[i, ..., c] = np.asarray(channel.resize((size, size), resample=Image.BICUBIC))
    return np.clip(out, 0, 255)
