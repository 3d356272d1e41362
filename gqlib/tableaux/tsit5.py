"""Tsitouras 5(4), FSAL, 7 stages, with Tsitouras' 4th-order continuous extension.

The coefficients are not rational: the paper prints them as decimals (16 digits). The values below
are the 20-digit roundings of the 85-digit solutions of Tsitouras' order conditions used by
OrdinaryDiffEq.jl and diffrax; each literal rounds to the same float64 as the long value. The order
conditions therefore hold to about 1e-14 (tested to 1e-13) rather than exactly.
"""
from ._tableau import ButcherTableau

_c = (0.0, 0.161, 0.327, 0.9, 0.98002554090450968573, 1.0, 1.0)
_b = (0.096460766818065229518, 0.01, 0.47988965041449957478, 1.3790085741037418932,
      -3.2900695154360806799, 2.3247105240997739824, 0.0)
# Embedded 4th-order weights b_hat, with b_hat_7 = +1/66 as in diffrax (sum(b_hat) = 1). Sources differ
# in the sign of the printed error weights (OrdinaryDiffEq's btilde is b_hat - b); b -/+ b_err are
# both 4th order, so only the convention is at stake, not the method.
_b_hat = (0.094680755765839458075, 0.0091835655403432530968, 0.48777052842476157079,
          1.2342975669304789857, -2.7077123499835254549, 1.8666284181705870358, 0.015151515151515151515)
# b - b_hat, stored directly (differences taken in high precision, rounded once)
_b_err = (0.0017800110522257714434, 0.00081643445965674690322, -0.0078808780102619960103,
          0.14471100717326290754, -0.58235716545255522502, 0.45808210592918694666,
          -0.015151515151515151515)

TABLEAU = ButcherTableau(
    name="tsit5",
    c=_c,
    a=(
        (),
        (0.161,),
        (-0.0084806554923569885444, 0.33548065549235698854),
        (2.8971530571054934321, -6.3594484899750748431, 4.362295432869581411),
        (5.3258648284392566044, -11.748883564062827878, 7.4955393428898362083, -0.092495066361755249257),
        (5.8614554429464200287, -12.920969317847109292, 8.1593678985761586432, -0.071584973281400997224,
         -0.028269050394068382909),
        _b[:6],
    ),
    b=_b,
    b_err=_b_err,
    order=5,
    error_order=4,
    # Tsitouras' b_i(theta) (printed factored, e.g. b_7 = 2.5 theta^2 (theta - 1)(theta - 0.6)), expanded
    # exactly and rounded once; rows = stages, cols = theta^1..4 (OrdinaryDiffEq's r_ij)
    dense=(
        (1.0, -2.763706197274826, 2.9132554618219126, -1.0530884977290216),
        (0.0, 0.13169999999999998, -0.2234, 0.1017),
        (0.0, 3.9302962368947516, -5.941033872131505, 2.490627285651253),
        (0.0, -12.411077166933676, 30.33818863028232, -16.548102889244902),
        (0.0, 37.50931341651104, -88.1789048947664, 47.37952196281928),
        (0.0, -27.896526289197286, 65.09189467479366, -34.87065786149661),
        (0.0, 1.5, -4.0, 2.5),
    ),
    dense_order=4,
    provenance="Tsitouras (2011), Runge-Kutta pairs of order 5(4) satisfying only the first column "
               "simplifying assumption, Comput. Math. Appl. 62(2), 770-775 (coefficients, embedded "
               "weights and the continuous extension b_i(theta)); high-precision values as "
               "OrdinaryDiffEq.jl / diffrax",
)
