"""The domain classifier (FID's feature network for the built-in datasets) written out layer by layer."""

import torch
import torch.nn.functional as F

from gaussdiff.nets import ClassifierConfig, DomainClassifier


def test_default_shape_is_32_then_64_channels_and_128_features():
    """The documented shape: 32 channels in the first two convolutions, 64 in the last two, 2x2 pooled (4 * 64 = 256
    inputs to the feature layer), 128 features, 10 classes. The cached classifiers' weights depend on it."""
    net = DomainClassifier(ClassifierConfig())
    shapes = {name: tuple(p.shape) for name, p in net.named_parameters() if name.endswith("weight") and p.dim() > 1}
    assert list(shapes.values()) == [(32, 1, 3, 3), (32, 32, 3, 3), (64, 32, 3, 3), (64, 64, 3, 3), (128, 256),
                                     (10, 128)]


def test_forward_is_conv_conv_pool_conv_conv_pool_features_logits():
    """conv3x3-GroupNorm(8)-SiLU twice at width w, 2x2 max pool, twice at 2w, average pool to 2x2, flatten (channel
    major), a linear feature layer then SiLU (``features``), and the head on those (logits); in float64 with every
    parameter drawn afresh, through torch.nn.functional, on 12x12 images (the average pool sees 3x3 cells)."""
    torch.manual_seed(0)
    net = DomainClassifier(ClassifierConfig(in_channels=2, num_classes=3, channels=8, feature_dim=5)).double()
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.3)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    norms = [m for m in net.modules() if isinstance(m, torch.nn.GroupNorm)]
    x = torch.randn(2, 2, 12, 12, generator=torch.Generator().manual_seed(1), dtype=torch.float64)

    h = x
    for i, (conv, norm) in enumerate(zip(convs, norms)):
        h = F.conv2d(h, conv.weight, conv.bias, padding=1)
        groups = h.reshape(len(h), 8, -1)
        mean, var = groups.mean(-1, keepdim=True), groups.var(-1, unbiased=False, keepdim=True)
        h = ((groups - mean) / torch.sqrt(var + 1e-5)).reshape(h.shape)
        h = h * norm.weight[:, None, None] + norm.bias[:, None, None]
        h = h * torch.sigmoid(h)
        if i == 1:  # 12x12 -> 6x6, the maximum of each 2x2 block
            h = h.reshape(len(h), h.shape[1], 6, 2, 6, 2).amax((3, 5))
    h = h.reshape(len(h), h.shape[1], 2, 3, 2, 3).mean((3, 5)).flatten(1)  # 6x6 -> 2x2, the mean of each 3x3 block
    f = h @ net.feature.weight.T + net.feature.bias
    features = f * torch.sigmoid(f)
    logits = features @ net.head.weight.T + net.head.bias
    torch.testing.assert_close(net.features(x), features, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(net(x), logits, rtol=1e-12, atol=1e-12)
