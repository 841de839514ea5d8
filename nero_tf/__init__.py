"""nero_tf: the Nero optimiser (Liu et al., ICML 2021) for Keras 3.

>>> model.compile(optimizer=nero_tf.Nero(), loss=...)
"""

__version__ = "0.1.0"

from nero_tf.layouts import NeuronLayout, model_layouts
from nero_tf.nero import Nero
from nero_tf.constrained import Constrained
from nero_tf.constraints import summary
from nero_tf.lamb import PaperLamb
from nero_tf.layers import CenteredWeightNormDense
from nero_tf.madam import Madam
from nero_tf import formulation, tf_cpu  # how Nero's update is computed

__all__ = ["Nero", "NeuronLayout", "model_layouts", "__version__",
           "Constrained", "PaperLamb", "Madam", "CenteredWeightNormDense", "summary",
           "formulation", "tf_cpu"]
